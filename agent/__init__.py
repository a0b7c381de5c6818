"""mstt's agent side: configs, tasks, offline data, demos, and the command line."""
