"""What runs on the host: the step scripts (steps/), the command text that carries them (remote.py)
and DevStack's local.conf (localconf.py). Nothing here creates a Pulumi resource."""
