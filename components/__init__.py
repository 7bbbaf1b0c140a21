"""The Pulumi ComponentResources of the stack (what runs on the host is in onhost/)."""
