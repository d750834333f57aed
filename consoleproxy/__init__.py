"""noVNC console proxy: a websockify server that checks the Origin and the console token.

It imports no Django and no other project package; it reaches the control plane only over HTTP, through
the consoleauth view.
"""
