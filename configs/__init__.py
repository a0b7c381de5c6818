"""Experiment, task and ablation configs and the shipped demos, as package data (`mstt.configs`)."""
