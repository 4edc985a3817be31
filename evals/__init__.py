"""RCMU tasks and RC&P-Bench evaluated through the agent graph (`rcmu_agent.evals`); see the evaluation issue."""
