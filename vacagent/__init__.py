"""vacagent: a feedback-driven provisioning daemon in the style of Vac and Vcycle."""

__version__ = "0.1.0"
