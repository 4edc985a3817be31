"""RCMU instruction data and RCVIT LoRA training (`rcmu_agent.train`).

- `records`: the JSONL schema of an instruction record, the prompt it trains on (the agent's own
  `build_prompt`) and `validate_file`, the check of a training file.
- `validate`: `rcmu data validate` on any of the project's dataset formats (training records and the
  three evaluation sets), recognised from the file.
- `sources`: RefCOCO/RefCOCOg (refer layout) and plain-JSONL source loaders.
- `data`: the eight-stage LLM construction pipeline (`rcmu data build`), resumable and cached.
- `rcvit`: LoRA training with accelerate (`rcmu train`).
- `merge`: folding a trained adapter into its base model (`rcmu merge`).

Submodules are imported on use, so `import rcmu_agent.train` stays light.
"""

__all__ = ["data", "merge", "rcvit", "records", "sources", "validate"]
