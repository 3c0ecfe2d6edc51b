"""Developer scripts: the demo and the dashboard generator."""
