"""The web part: the dashboard pages, their JSON API and who may call them."""
