"""meshblock.agent."""
