"""`bingo-host bootstrap`: the engine (engine.py) and its steps (steps/), one per concern."""
