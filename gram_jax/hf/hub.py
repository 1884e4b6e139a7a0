"""Publish an exported model to the Hugging Face Hub with a model card.

The card says what the model is (architecture, base model, the stages that made it, the
data), shows the evaluation table the evaluate stage wrote, and how to use it from
transformers (the judging prompt and the A/B readout) and from gram_jax.
"""
import json
import os
from typing import Sequence

from gram_jax import storage
from gram_jax.errors import GramError
from gram_jax.judge_card import JUDGE_CARD

USAGE = '''```python
import torch, transformers
model = transformers.AutoModelForCausalLM.from_pretrained("{repo}")
tokenizer = transformers.AutoTokenizer.from_pretrained("{repo}")
prompt = tokenizer.apply_chat_template(
    [{{"role": "user", "content": JUDGE_PROMPT.format(user_input=q, response_1=a, response_2=b)}}],
    tokenize=False, add_generation_prompt=True){verdict_prefix}
ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
logits = model(**ids).logits[0, -1]
label_ids = [tokenizer.encode(x, add_special_tokens=False)[0] for x in ("A", "B")]
p_a, p_b = torch.softmax(logits[label_ids], -1)  # average over both orders for a score
```

With gram_jax: `gram_jax.RewardModel.from_pretrained(path).score(q, a, b)` (both orders,
{readout}).'''


def model_card(folder: str, repo_id: str, base_model: str = "", stages: Sequence[str] = (),
               datasets: Sequence[str] = (), eval_report: str = "") -> str:
  """README.md text for `folder` (an exported HF model directory)."""
  config = _read_json(os.path.join(folder, "config.json"))
  judge = _read_json(os.path.join(folder, JUDGE_CARD)) if os.path.isfile(
      os.path.join(folder, JUDGE_CARD)) else {}
  reasoning = bool(judge.get("reasoning"))
  front = ["---", "library_name: transformers", "pipeline_tag: text-generation",
           "tags: [reward-model, generative-reward-model, gram, gram_jax]"]
  if base_model:
    front.append(f"base_model: {base_model}")
  if datasets:
    front.append("datasets: [" + ", ".join(datasets) + "]")
  front.append("---")
  kind = "GRAM-R² (writes a rationale, then its verdict)" if reasoning else \
      "GRAM (reads the verdict directly)"
  lines = front + [
      f"# {repo_id.split('/')[-1]}", "",
      f"A generative reward model, {kind}, trained with "
      "gram_jax (JAX/Flax).", "",
      "| | |", "|---|---|",
      f"| architecture | {config.get('model_type', '?')}, {config.get('num_hidden_layers', '?')} "
      f"layers, hidden {config.get('hidden_size', '?')}, vocab {config.get('vocab_size', '?')} |",
      f"| base model | {base_model or 'trained from scratch'} |",
      f"| stages | {', '.join(stages) or 'not recorded'} |",
      f"| data | {', '.join(datasets) or 'not recorded'} |", "",
      "## Evaluation", "",
      _eval_table(eval_report), "",
      "## Usage", "",
      "The judging prompt is in `judge.json` (`template`)." if judge else
      "The judging prompt is GRAM's (gram_jax `templates.GRAM_JUDGE_PROMPT`).", "",
      USAGE.format(repo=repo_id,
                   verdict_prefix=" + RATIONALE + \"<answer>\\n\"" if reasoning else "",
                   readout="after a generated rationale" if reasoning else
                   "softmax over the two label logits")]
  return "\n".join(lines) + "\n"


def _eval_table(eval_report: str) -> str:
  """The evaluate stage's report.md (a workdir or the file itself), or a note."""
  if not eval_report:
    return "Not evaluated with gram_jax's evaluate stage."
  path = (os.path.join(eval_report, "report.md") if storage.isdir(eval_report)
          else eval_report)
  if not storage.isfile(path):
    raise GramError(f"{path}: evaluation report not found (run the evaluate stage)")
  return storage.read_text(path).strip()


def _read_json(path: str) -> dict:
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise GramError(f"{path}: cannot read ({e})") from None


def push(folder: str, repo_id: str, private: bool = False, token: str | None = None,
         endpoint: str | None = None) -> str:
  """Creates the repository (if needed) and uploads `folder`; returns the commit URL."""
  import huggingface_hub
  token = token or os.environ.get("HF_TOKEN") or huggingface_hub.get_token()
  if not token:
    raise GramError("no Hugging Face token: set HF_TOKEN or run `hf auth login`")
  api = huggingface_hub.HfApi(endpoint=endpoint, token=token)
  try:
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    info = api.upload_folder(folder_path=folder, repo_id=repo_id, repo_type="model",
                             commit_message="Upload gram_jax model")
  except Exception as e:  # network, auth and HTTP errors come in many types
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise GramError(f"push to {api.endpoint}/{repo_id} failed: {first}") from None
  return info.commit_url
