"""Evaluation of a trained meta-model: metrics, the evaluate stage, reports and plots."""
