"""mstt's agent side, in layers that import downwards only (import-linter checks it in CI):

    cli.py        the command line: parse, call one experiment function, print, exit
    experiments/  training stages, evaluation methods and controllers, offline RL, the agent loop
    worlds/       task families (maze, fetch) behind one Task interface, and offline data collection
    core/         plain types and geometry: Demo, camera calibration, maze grid, config models, I/O
"""
