"""Prompt templates, shipped as package data (`mstt.prompts`) and loaded by mstt.perception.prompts."""
