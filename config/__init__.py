"""Validated stack settings, one module per config section (see config/settings.py), and what is
planned from them alone (config/ingress.py: the security-group rules)."""
