"""The hardening search: BO controller, Monte-Carlo objective, shared trainer, journal (needs torch)."""
