"""The engine that decides, its values and its timers. Imports no outside system."""
