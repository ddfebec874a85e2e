"""evolab: a workbench for Evol-Instruct (WizardLM, 2023)."""
__version__ = "0.1.0"
