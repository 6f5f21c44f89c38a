"""The executor: scheduler loop, source tasks, job handles."""
