"""Multi-agent environments (SPEC section 3): the interface and one module per scenario."""

from .base import AgentGraph, MultiAgentEnv

__all__ = ["AgentGraph", "MultiAgentEnv"]
