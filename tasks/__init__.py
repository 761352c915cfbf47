"""Task families. Each package exposes ``train(cfg, run)``; torch-native ones build an engine.task_api.TorchTask.

A task never imports another task.
"""
