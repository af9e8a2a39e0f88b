"""lit_align.loops: multi-stage methods (ReST, CREAM) on a resumable stage driver.

rundir.py      files that survive kill -9: atomic JSON/JSONL writes, ChunkedJSONL (appendable, committed by chunk)
driver.py      RunDir and Stage: one folder per stage, keyed by what it depends on, skipped when finished, resumed
               from its `.partial` folder when interrupted
trainer.py     the one way loops (and the demo) build a Lightning Trainer inside a stage folder and fit with resume
progress.py    progress bars with responses/s and tokens/s for sampling and scoring
sampling.py    N samples per prompt, scored, appended chunk by chunk with a seed per (stage, chunk)
thresholds.py  ReST's Improve filter (absolute / per-prompt quantile thresholds) and reward weights
evaluation.py  the per-policy metrics of a loop (val_reward for early stopping, test_success for the report)
config.py      the jsonargparse command line of a loop (--config, dotted overrides, --print_config)
rest.py        ReST (Gulcehre et al., arXiv 2308.08998): Grow / Improve stages, the loop, `lit-align rest`
consistency.py CREAM's self-labelling: Kendall tau-b of two rankings, consistency C, pairs, per-variant smoothing
logprob_cache.py  sequence log-probs of sampled responses per (model weights digest, sample key), on disk
cream.py       CREAM / SRLM (Wang et al., arXiv 2410.12735): rank and DPO stages per iteration, `lit-align cream`
"""
from lit_align.files import write_json, write_jsonl
from lit_align.loops.cream import CreamConfig, run_cream
from lit_align.loops.driver import RunDir, Stage, digest
from lit_align.loops.rest import RestConfig, run_rest
from lit_align.loops.rundir import ChunkedJSONL
from lit_align.loops.trainer import build_trainer, fit, read_metrics

__all__ = ["ChunkedJSONL", "CreamConfig", "RestConfig", "RunDir", "Stage", "build_trainer", "digest", "fit",
           "read_metrics", "run_cream", "run_rest", "write_json", "write_jsonl"]
