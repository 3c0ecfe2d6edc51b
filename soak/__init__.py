"""The soak run (``make soak``) and the process helpers it shares with tests."""
