"""Tracr compilation in guarded workers, made fast, and verified against `rasp.evaluate`."""
