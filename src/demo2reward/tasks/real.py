"""Real tasks: TL;DR and UltraChat turned into the pipeline's rows, from the hub or a local copy.

`load_task_rows(config)` returns the same three tables that `task.build_task` writes for the synthetic task,
in TRL's conversational schema (every cell a list of ``{"role", "content"}`` messages):

- ``train``          prompt/completion: the demonstrations;
- ``heldout``        prompt/completion on held-out prompts (the demos to beat);
- ``heldout_prefs``  prompt/chosen/rejected: held-out *human* preference pairs, chosen = what the human picked.

Sources (defaults of the config classes below):

- TL;DR demonstrations: ``vwxyzjn/summarize_from_feedback_tldr_3_filtered``, splits train / validation;
  held-out preferences: ``openai/summarize_from_feedback`` config ``comparisons``, split validation, or the
  preprocessed ``vwxyzjn/summarize_from_feedback_oai_preprocessing_1706381144`` (recognised by its ``query``
  column; set ``prefs_config: null``).
- UltraChat demonstrations: ``HuggingFaceH4/ultrachat_200k``, splits train_sft / test_sft, either the first
  exchange (``turns: first_turn``, SPIN's setting) or the last assistant reply with the dialogue before it as
  prompt (``all_turns``); held-out preferences: ``HuggingFaceH4/ultrafeedback_binarized``, split test_prefs.
- ``human_prefs`` (only with ``n_human_pairs`` > 0, for ``reward.human_pairs``): the same preference data set's
  training split (TL;DR ``train``, UltraFeedback ``train_prefs``), minus rows whose prompt is evaluated.

Every table can instead come from a local copy in the *upstream* schema, so that a machine without hub access
(like CI) runs the same code: a ``.jsonl``/``.json`` file, a ``.parquet`` file, a ``save_to_disk`` folder
(`Dataset` or `DatasetDict`; the configured split is taken from a `DatasetDict`), or a hub snapshot folder
(``hf download --repo-type dataset``), which `datasets.load_dataset` reads as a local dataset.

Choices that change what the model sees, and why:

- Responses (completion, chosen, rejected) are stripped of leading/trailing whitespace. The TL;DR comparison
  summaries carry a leading space (a GPT-2 tokenisation habit: the summary continues ``TL;DR:`` directly), and
  demonstration summaries may; in a chat message the chat template supplies the separation, and a stray space
  would be one more token on which demos and the policy's rollouts differ, which a reward model learns to see.
  Prompts are kept byte-exact (the TL;DR prompt is the upstream format string).
- Length limits *filter*, never truncate: a truncated post or answer is no longer what the writer or the
  human labeller saw, so its demonstration or label would be wrong. Rows are dropped before sizes are taken,
  so ``n_*`` counts rows that pass; asking for more than pass is an error, never a silent shortfall.
- Held-out rows whose prompt equals the prompt of a returned ``train`` row are dropped (``drop_train_overlap``,
  whitespace-insensitive): UltraFeedback draws part of its prompts from UltraChat, and a held-out score on
  training prompts measures memory.
- Rows with no usable answer (empty response, no assistant turn, identical chosen and rejected, CNN/DM rows
  of the TL;DR comparisons) are skipped and counted in the log.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from demo2reward.core.artifacts import DataFileError, read_jsonl, write_jsonl
from demo2reward.core.hub import hub_offline, offline_requested
from demo2reward.core.params import TLDR_DEMOS_ID, TLDR_PREFS_ID, ULTRACHAT_ID, ULTRAFEEDBACK_ID

log = logging.getLogger(__name__)


# The prompt of "Learning to summarize from human feedback" (OpenAI's summarize-from-feedback tasks.py), verbatim.
TLDR_PROMPT_FORMAT = "SUBREDDIT: r/{subreddit}\n\nTITLE: {title}\n\nPOST: {post}\n\nTL;DR:"
# Batches of the `comparisons` validation split that hold CNN/DM articles, not Reddit posts (the same list that
# built the preprocessed dataset's `validation_cnndm` split).
TLDR_CNNDM_BATCHES = frozenset({"batch0_cnndm", "cnndm0", "cnndm2"})
_EOS_SUFFIX = "<|endoftext|>"  # appended to chosen/rejected by the preprocessed TL;DR dataset (Pythia's EOS)
_PAD_PREFIX = re.compile(r"^(?:\s|\[PAD\])+")  # left padding of the preprocessed `query`, if it survived decoding

_SCRIPTS_UNSUPPORTED = "Dataset scripts are no longer supported"
_CHUNK = 1024  # rows converted per batch while sampling


class TaskDataError(DataFileError):
    """A real task's data cannot be loaded: hub unreachable, file missing, or a column/value not in the schema."""


# --------------------------------------------------------------------------------------------------- config


@dataclass(frozen=True, kw_only=True)
class RealTaskConfig:
    """Fields every real task shares: sizes, length filters, sampling and hub access."""

    KEY: ClassVar[str] = "task"  # where the config lives in params.yaml; error messages name keys below it

    n_train: int | None = None  # demonstrations; None = all that pass the filters
    n_heldout: int | None = None  # held-out prompts with a demonstration; None = all
    n_heldout_pairs: int | None = None  # held-out human preference pairs; None = all
    max_prompt_chars: int | None = None  # drop rows whose prompt (all messages) is longer; None = no limit
    max_response_chars: int | None = None  # drop rows with a longer completion / chosen / rejected; None = no limit
    seed: int | None = 0  # rows are sampled in a seeded random order; None = file order (first n)
    drop_train_overlap: bool = True  # drop held-out rows whose prompt is a training prompt
    offline: bool = False  # never contact the hub: hub ids come from the local HF cache only (also: HF_HUB_OFFLINE=1)
    cache_dir: str | None = None  # datasets cache for hub downloads and snapshot folders; None = HF default
    n_human_pairs: int = 0  # training preference pairs for reward.human_pairs (human_prefs_split); 0 = none loaded
    human_prefs_path: str | None = None  # local copy of them; None = prefs_id from the hub

    def __post_init__(self) -> None:
        for name in ("n_train", "n_heldout", "n_heldout_pairs", "max_prompt_chars", "max_response_chars"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{self.KEY}.{name}: must be a positive integer or null, got {value!r}")
        if not isinstance(self.n_human_pairs, int) or isinstance(self.n_human_pairs, bool) or self.n_human_pairs < 0:
            raise ValueError(f"{self.KEY}.n_human_pairs: must be a non-negative integer, got {self.n_human_pairs!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RealTaskConfig:
        """Build from a params.yaml section; an unknown key fails with its name instead of being ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{cls.KEY}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**values)


@dataclass(frozen=True, kw_only=True)
class TLDRConfig(RealTaskConfig):
    """TL;DR summarisation: Reddit posts, reference summaries, and OpenAI's human comparisons."""

    KEY: ClassVar[str] = "task.tldr"

    demos_id: str = TLDR_DEMOS_ID
    train_split: str = "train"
    heldout_split: str = "validation"
    demos_path: str | None = None  # local copy of the demonstrations (train split; a multi-split folder also serves heldout)
    heldout_path: str | None = None  # local copy of the held-out demonstrations (overrides demos_path for heldout)
    prefs_id: str = TLDR_PREFS_ID  # or TLDR_PREFS_PREPROCESSED_ID with prefs_config=None
    prefs_config: str | None = "comparisons"
    prefs_split: str = "validation"
    prefs_path: str | None = None  # local copy of the comparisons (either schema)
    human_prefs_split: str = "train"  # the training comparisons that reward.human_pairs draws from


@dataclass(frozen=True, kw_only=True)
class UltraChatConfig(RealTaskConfig):
    """UltraChat dialogues as demonstrations, UltraFeedback's binarised test pairs as held-out preferences."""

    KEY: ClassVar[str] = "task.ultrachat"

    demos_id: str = ULTRACHAT_ID
    train_split: str = "train_sft"
    heldout_split: str = "test_sft"
    demos_path: str | None = None
    heldout_path: str | None = None
    turns: Literal["first_turn", "all_turns"] = "first_turn"  # SPIN's single-turn setting, or the last reply in context
    prefs_id: str = ULTRAFEEDBACK_ID
    prefs_config: str | None = None
    prefs_split: str = "test_prefs"
    prefs_path: str | None = None
    human_prefs_split: str = "train_prefs"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.turns not in ("first_turn", "all_turns"):
            raise ValueError(f"{self.KEY}.turns: must be first_turn or all_turns, got {self.turns!r}")


TASK_CONFIGS: dict[str, type[RealTaskConfig]] = {"tldr": TLDRConfig, "ultrachat": UltraChatConfig}


# ------------------------------------------------------------------------------------------------- tables


@dataclass
class _Table:
    """Rows of one source, read lazily: a hub `Dataset` stays memory-mapped, only sampled rows become dicts."""

    name: str  # the file or hub id, for error messages
    columns: frozenset[str]
    size: int
    take: Callable[[Sequence[int]], list[dict]]


def _from_dataset(name: str, ds) -> _Table:
    return _Table(name, frozenset(ds.column_names), len(ds), lambda idx: ds.select(idx).to_list())


def _from_rows(name: str, rows: list[dict]) -> _Table:
    columns = frozenset(rows[0]) if rows else frozenset()
    return _Table(name, columns, len(rows), lambda idx: [rows[i] for i in idx])


def _hub_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "the hub could not be reached", as `datasets` 5 / `huggingface_hub` raise them.

    `load_dataset` turns a failed DNS lookup, a refused connection, a timeout and offline mode into the builtin
    `ConnectionError` ("Couldn't reach '<id>' on the Hub (...)"; `OfflineModeIsEnabled` subclasses it). A
    failure later, while downloading data files, surfaces as httpx's `TransportError`, a `TimeoutError`, an
    `HfHubHTTPError` (e.g. 5xx after retries) or `LocalEntryNotFoundError` (offline, file not cached).
    """
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    errors: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError, HfHubHTTPError, LocalEntryNotFoundError)
    try:
        from huggingface_hub.utils import httpx  # the HTTP client huggingface_hub uses (httpx or its fork)

        errors += (httpx.TransportError,)
    except (ImportError, AttributeError):
        pass
    return errors


def _load_hub(cfg: RealTaskConfig, dataset_id: str, config_name: str | None, split: str, path_key: str, split_key: str) -> _Table:
    import datasets
    from datasets.exceptions import DatasetNotFoundError

    offline = cfg.offline or offline_requested()
    local_hint = f"set {path_key} to a local jsonl/parquet/save_to_disk copy in the upstream schema"
    with hub_offline(offline):
        try:
            ds = datasets.load_dataset(dataset_id, name=config_name, split=split, cache_dir=cfg.cache_dir)
        except DatasetNotFoundError as err:
            raise TaskDataError(f"{dataset_id} was not found on the hub or is gated ({err}); {local_hint}") from None
        except _hub_errors() as err:
            why = "offline mode, and it is not in the local HF cache" if offline else f"{type(err).__name__}: {err}"
            raise TaskDataError(f"cannot reach {dataset_id} on the hub ({why}); {local_hint}") from None
        except RuntimeError as err:
            if _SCRIPTS_UNSUPPORTED not in str(err):
                raise
            raise TaskDataError(
                f"{dataset_id} ships a loading script, which datasets>=4 no longer runs; {local_hint} "
                f"(e.g. the parquet export on its refs/convert/parquet branch)"
            ) from None
        except ValueError as err:
            if "split" not in str(err).lower():
                raise
            raise TaskDataError(f"{dataset_id}: {err}; check {split_key}") from None
    return _from_dataset(dataset_id, ds)


def _read_json_file(path: Path) -> list[dict]:
    """JSON lines (what `Dataset.to_json` writes, whatever the suffix) or one JSON array of objects."""
    with path.open() as f:
        head = f.read(4096).lstrip()
    if head.startswith("["):
        try:
            rows = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise TaskDataError(f"{path}:{err.lineno}: not valid JSON: {err.msg}") from None
        if not all(isinstance(r, dict) for r in rows):
            raise TaskDataError(f"{path}: expected a JSON array of objects")
        return rows
    try:
        return read_jsonl(path)
    except DataFileError as err:
        raise TaskDataError(str(err)) from None


def _load_local(cfg: RealTaskConfig, path: Path, split: str, config_name: str | None, path_key: str) -> _Table:
    """Read a local copy; a multi-split folder gives `split`, a single-split file or `Dataset` is used whole."""
    import datasets
    from datasets.exceptions import DatasetsError

    if not path.exists():
        raise TaskDataError(f"{path}: not found (set by {path_key})")
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".json"):
            return _from_rows(str(path), _read_json_file(path))
        if suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            try:
                table = pq.read_table(path)
            except (pa.ArrowInvalid, OSError) as err:
                raise TaskDataError(f"{path}: not a readable parquet file: {err}") from None
            return _Table(str(path), frozenset(table.column_names), table.num_rows, lambda idx: table.take(idx).to_pylist())
        raise TaskDataError(f"{path}: unsupported file type {suffix!r} (set by {path_key}); use .jsonl, .json or .parquet")

    if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise TaskDataError(f"{path}: no split {split!r} in this save_to_disk folder (has: {', '.join(ds)})")
            ds = ds[split]
        return _from_dataset(str(path), ds)

    # A hub snapshot: README.md and data files, which `load_dataset` resolves to splits like the hub does.
    try:
        ds = datasets.load_dataset(str(path), name=config_name, split=split, cache_dir=cfg.cache_dir)
    except (ValueError, FileNotFoundError, DatasetsError) as err:
        raise TaskDataError(f"{path}: cannot load split {split!r} from this folder ({type(err).__name__}: {err})") from None
    return _from_dataset(str(path), ds)


def _source(
    cfg: RealTaskConfig,
    *,
    local: str | None,
    path_key: str,
    dataset_id: str,
    config_name: str | None,
    split: str,
    split_key: str,
    required: Sequence[str] | Callable[[frozenset[str]], Sequence[str]],
) -> _Table:
    """Load one table (local copy if given, else the hub) and check it has the columns its converter reads."""
    if local is not None:
        table = _load_local(cfg, Path(local), split, config_name, path_key)
    else:
        table = _load_hub(cfg, dataset_id, config_name, split, path_key, split_key)
    needed = required(table.columns) if callable(required) else required
    missing = [c for c in needed if c not in table.columns]
    if missing:
        where = table.name if local is not None else f"{dataset_id} (split {split})"
        raise TaskDataError(
            f"{where}: missing column(s) {', '.join(missing)}; expected the {dataset_id} schema "
            f"(has: {', '.join(sorted(table.columns)) or 'no columns'})"
        )
    return table


def _is_multi_split_folder(local: str | None) -> bool:
    if local is None:
        return False
    path = Path(local)
    return path.is_dir() and not (path / "state.json").exists()


# -------------------------------------------------------------------------------------------- converters

Row = dict[str, Any]
Converted = Row | str  # a row, or the reason it is skipped


def _message(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} is {type(value).__name__}, expected a string")
    return value


def tldr_prompt(subreddit: str, title: str, post: str) -> str:
    """The upstream TL;DR prompt, exactly (the policy is asked to continue after ``TL;DR:``)."""
    return TLDR_PROMPT_FORMAT.format(subreddit=subreddit, title=title, post=post)


def _tldr_demo(raw: Row) -> Converted:
    prompt = tldr_prompt(_text(raw["subreddit"], "subreddit"), _text(raw["title"], "title"), _text(raw["post"], "post"))
    summary = _text(raw["summary"], "summary").strip()
    if not summary:
        return "empty response"
    return {"prompt": [_message("user", prompt)], "completion": [_message("assistant", summary)]}


def _pair(prompt: list[dict], chosen: str, rejected: str) -> Converted:
    chosen, rejected = chosen.strip(), rejected.strip()
    if not chosen or not rejected:
        return "empty response"
    if chosen == rejected:
        return "identical chosen and rejected"
    return {"prompt": prompt, "chosen": [_message("assistant", chosen)], "rejected": [_message("assistant", rejected)]}


def _tldr_comparison(raw: Row) -> Converted:
    """openai/summarize_from_feedback `comparisons`: chosen = summaries[choice], the human's pick."""
    info = raw["info"]
    if raw.get("batch") in TLDR_CNNDM_BATCHES or not info.get("post"):
        return "no Reddit post (CNN/DM article)"
    summaries, choice = raw["summaries"], raw["choice"]
    if len(summaries) != 2 or choice not in (0, 1):
        raise ValueError(f"expected 2 summaries and choice 0 or 1, got {len(summaries)} summaries and choice {choice!r}")
    prompt = tldr_prompt(_text(info["subreddit"], "info.subreddit"), _text(info["title"], "info.title"), info["post"])
    return _pair(
        [_message("user", prompt)],
        _text(summaries[choice]["text"], "summaries.text"),
        _text(summaries[1 - choice]["text"], "summaries.text"),
    )


def _tldr_preprocessed(raw: Row) -> Converted:
    """The vwxyzjn OAI-preprocessed comparisons: `query` is the formatted (possibly post-truncated) prompt.

    Its `chosen`/`rejected` are ``summaries[choice].text + "<|endoftext|>"``; the EOS marker is removed.
    """
    query = _PAD_PREFIX.sub("", _text(raw["query"], "query")).rstrip()
    if not query:
        return "empty prompt"

    def clean(text: Any, what: str) -> str:
        return _text(text, what).strip().removesuffix(_EOS_SUFFIX)

    return _pair([_message("user", query)], clean(raw["chosen"], "chosen"), clean(raw["rejected"], "rejected"))


def _tldr_prefs_columns(columns: frozenset[str]) -> Sequence[str]:
    """The preprocessed variant is recognised by its `query` column; anything else must be the raw comparisons."""
    return ("query", "chosen", "rejected") if "query" in columns else ("info", "summaries", "choice")


def _messages(value: Any, what: str) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise TypeError(f"{what} is {type(value).__name__}, expected a list of messages")
    return [_message(_text(m["role"], f"{what}.role"), _text(m["content"], f"{what}.content")) for m in value]


def _split_at_assistant(messages: list[dict[str, str]], which: Literal["first", "last"]) -> tuple[list[dict], str] | str:
    """(prompt, answer): the messages before the first/last assistant turn, and that turn's text."""
    turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    turns = [i for i in turns if any(m["role"] == "user" for m in messages[:i])]
    if not turns:
        return "no assistant reply after a user turn"
    i = turns[0] if which == "first" else turns[-1]
    if messages[i - 1]["role"] != "user":
        return "prompt does not end with a user turn"
    return messages[:i], messages[i]["content"]


def _ultrachat_demo(turns: Literal["first_turn", "all_turns"]) -> Callable[[Row], Converted]:
    def convert(raw: Row) -> Converted:
        split = _split_at_assistant(_messages(raw["messages"], "messages"), "first" if turns == "first_turn" else "last")
        if isinstance(split, str):
            return split
        prompt, answer = split
        answer = answer.strip()
        if not answer:
            return "empty response"
        return {"prompt": prompt, "completion": [_message("assistant", answer)]}

    return convert


def _ultrafeedback_pair(raw: Row) -> Converted:
    """ultrafeedback_binarized: `chosen`/`rejected` are whole dialogues; the last assistant turns are compared."""
    chosen = _split_at_assistant(_messages(raw["chosen"], "chosen"), "last")
    rejected = _split_at_assistant(_messages(raw["rejected"], "rejected"), "last")
    if isinstance(chosen, str):
        return chosen
    if isinstance(rejected, str):
        return rejected
    if chosen[0] != rejected[0]:
        return "chosen and rejected answer different prompts"
    return _pair(chosen[0], chosen[1], rejected[1])


# ------------------------------------------------------------------------------------------------ sampling


def _prompt_key(prompt: list[dict]) -> tuple[tuple[str, str], ...]:
    """Whitespace-insensitive identity of a prompt, to find held-out prompts that also occur in training."""
    return tuple((m["role"], " ".join(m["content"].split())) for m in prompt)


def _responses(row: Row) -> list[str]:
    return [row[k][-1]["content"] for k in ("completion", "chosen", "rejected") if k in row]


def _select(
    table: _Table,
    convert: Callable[[Row], Converted],
    cfg: RealTaskConfig,
    n: int | None,
    size_key: str,
    exclude: set[tuple] | None = None,
    excluded: str = "prompt also in train",
) -> list[Row]:
    """Convert rows in a seeded random order, drop those that fail a filter, and stop at `n` kept rows."""
    order = np.arange(table.size) if cfg.seed is None else np.random.default_rng(cfg.seed).permutation(table.size)
    kept: list[Row] = []
    skipped: Counter[str] = Counter()
    for start in range(0, table.size, _CHUNK):
        idx = [int(i) for i in order[start : start + _CHUNK]]
        for i, raw in zip(idx, table.take(idx), strict=True):
            try:
                row = convert(raw)
            except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
                raise TaskDataError(f"{table.name}: row {i}: not in the expected schema ({type(err).__name__}: {err})") from None
            if isinstance(row, str):
                skipped[row] += 1
            elif cfg.max_prompt_chars is not None and sum(len(m["content"]) for m in row["prompt"]) > cfg.max_prompt_chars:
                skipped["prompt longer than max_prompt_chars"] += 1
            elif cfg.max_response_chars is not None and max(map(len, _responses(row))) > cfg.max_response_chars:
                skipped["response longer than max_response_chars"] += 1
            elif exclude is not None and _prompt_key(row["prompt"]) in exclude:
                skipped[excluded] += 1
            else:
                kept.append(row)
                if n is not None and len(kept) == n:
                    _log_skips(table.name, len(kept), skipped)
                    return kept
    _log_skips(table.name, len(kept), skipped)
    if n is not None:
        reasons = "; ".join(f"{c} {why}" for why, c in skipped.most_common()) or "none skipped"
        raise TaskDataError(
            f"{table.name}: {size_key}={n} but only {len(kept)} of {table.size} rows pass the filters ({reasons}); "
            f"lower {size_key} (null takes all) or relax the length limits"
        )
    return kept


def _log_skips(name: str, kept: int, skipped: Counter[str]) -> None:
    details = ", ".join(f"{c} {why}" for why, c in skipped.most_common())
    log.info("%s: kept %d rows%s", name, kept, f"; skipped {details}" if details else "")


# ----------------------------------------------------------------------------------------------- entry point


def load_task_rows(config: RealTaskConfig) -> dict[str, list[Row]]:
    """The `train`, `heldout`, `heldout_prefs` and `human_prefs` (training preferences) rows of a real task, in the
    conversational schema."""
    if isinstance(config, TLDRConfig):
        demo: Callable[[Row], Converted] = _tldr_demo
        demo_columns: Sequence[str] = ("subreddit", "title", "post", "summary")

        def pref(raw: Row) -> Converted:
            return _tldr_preprocessed(raw) if "query" in raw else _tldr_comparison(raw)

        pref_columns: Sequence[str] | Callable[[frozenset[str]], Sequence[str]] = _tldr_prefs_columns
    elif isinstance(config, UltraChatConfig):
        demo, demo_columns = _ultrachat_demo(config.turns), ("messages",)
        pref, pref_columns = _ultrafeedback_pair, ("chosen", "rejected")
    else:
        raise TypeError(f"no real task for {type(config).__name__}; expected one of {', '.join(TASK_CONFIGS)}")

    key = config.KEY
    demos = {"dataset_id": config.demos_id, "config_name": None, "required": demo_columns}
    train_table = _source(
        config,
        local=config.demos_path,
        path_key=f"{key}.demos_path",
        split=config.train_split,
        split_key=f"{key}.train_split",
        **demos,
    )
    heldout_local, heldout_key = config.heldout_path, f"{key}.heldout_path"
    if heldout_local is None and _is_multi_split_folder(config.demos_path):
        heldout_local, heldout_key = config.demos_path, f"{key}.demos_path"
    heldout_table = _source(
        config,
        local=heldout_local,
        path_key=heldout_key,
        split=config.heldout_split,
        split_key=f"{key}.heldout_split",
        **demos,
    )
    prefs = {"dataset_id": config.prefs_id, "config_name": config.prefs_config, "required": pref_columns}
    prefs_table = _source(
        config,
        local=config.prefs_path,
        path_key=f"{key}.prefs_path",
        split=config.prefs_split,
        split_key=f"{key}.prefs_split",
        **prefs,
    )

    train = _select(train_table, demo, config, config.n_train, f"{key}.n_train")
    exclude = {_prompt_key(r["prompt"]) for r in train} if config.drop_train_overlap else None
    heldout = _select(heldout_table, demo, config, config.n_heldout, f"{key}.n_heldout", exclude)
    heldout_prefs = _select(prefs_table, pref, config, config.n_heldout_pairs, f"{key}.n_heldout_pairs", exclude)
    human_prefs: list[Row] = []
    if config.n_human_pairs:  # another split: disjoint from the held-out pairs; their prompts are dropped too
        human_table = _source(
            config,
            local=config.human_prefs_path,
            path_key=f"{key}.human_prefs_path",
            split=config.human_prefs_split,
            split_key=f"{key}.human_prefs_split",
            **prefs,
        )
        evaluated = {_prompt_key(r["prompt"]) for r in (*heldout, *heldout_prefs)}
        human_prefs = _select(
            human_table, pref, config, config.n_human_pairs, f"{key}.n_human_pairs", evaluated, "prompt evaluated"
        )
    return {"train": train, "heldout": heldout, "heldout_prefs": heldout_prefs, "human_prefs": human_prefs}


def write_task_files(rows: dict[str, list[Row]], out: str | Path) -> dict[str, int]:
    """Write `load_task_rows`' tables under the file names `task.build_task` uses, so later stages need no switch."""
    out = Path(out)
    return {
        "train": write_jsonl(out / "train.jsonl", rows["train"]),
        "heldout": write_jsonl(out / "heldout.jsonl", rows["heldout"]),
        "heldout_pairs": write_jsonl(out / "heldout_prefs.jsonl", rows["heldout_prefs"]),
        "human_pairs": write_jsonl(out / "human_prefs.jsonl", rows.get("human_prefs", [])),
    }
