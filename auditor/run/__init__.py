"""Running a plan against models: work items, pacing, the HTTP exchange, adaptive attacks, the local model."""
