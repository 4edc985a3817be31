"""RCMU instruction data and RCVIT LoRA training (`rcmu_agent.train`); see the RCVIT issue."""
