"""RCMU tasks and RC&P-Bench evaluated through the agent graph (`rcmu_agent.evals`).

- `datasets`: documented JSONL formats (RCMU test set, RC&P-Bench) and RAP's Yo'LLaVA JSON, with loaders.
- `metrics`: the arithmetic of RCVQA accuracy, RCIDScore, ALCE citation recall/precision/F1 and RC&P.
- `judges`: LLM judges (versioned prompts in `prompts/`), pluggable entailment (LLM or NLI), CLIPScore.
- `runner`: resumable runs in which every prediction is `Assistant.aask` (the compiled graph).
- `report`: summary.md/.json in the paper's table layout, plot.png, and a two-run comparison.

Small real samples of each set live in `samples/` (run them with `rcmu eval … --data`).
"""

__all__ = ["datasets", "judges", "metrics", "report", "runner"]
