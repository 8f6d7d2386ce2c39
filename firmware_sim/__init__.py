"""Simulated device firmware, so the whole lab runs and is tested without hardware."""
