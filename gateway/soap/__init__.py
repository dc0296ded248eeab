"""The spyne edge: the guard, the operations, the fault mapping and the app factory."""
