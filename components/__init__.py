"""ComponentResources of the stack and the remote steps' scripts (steps/)."""
