"""Prompt texts of the papers (exact; see SPEC.md sections 1, 2 and 6) and how to fill them."""

GRAM_JUDGE_PROMPT = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by "
    "two AI assistants to the user question displayed below. You should choose the assistant "
    "that follows the user's instructions and answers the user's question better.\n"
    "Your evaluation should consider factors such as the helpfulness, relevance, accuracy, "
    "depth, creativity, and level of detail of their responses. Avoid any position biases and "
    "ensure that the order in which the responses were presented does not influence your "
    "decision. Do not allow the length of the responses to influence your evaluation. Do not "
    "favor certain names of the assistants. Be as objective as possible.\n"
    "Please directly output your final verdict by strictly following this format: \"A\" if "
    "assistant A is better, \"B\" if assistant B is better.\n\n"
    "[User Question]\n{input}\n\n"
    "[The Start of Assistant A's Answer]\n{response_a}\n[The End of Assistant A's Answer]\n\n"
    "[The Start of Assistant B's Answer]\n{response_b}\n[The End of Assistant B's Answer]\n\n"
    "#Preferred: ")

# A short judging prompt for the tiny from-scratch demos: the same slots and verdict position
# as GRAM_JUDGE_PROMPT, a tenth of the tokens, so a CPU run learns in a minute. Real models
# and released checkpoints use GRAM_JUDGE_PROMPT (the default everywhere else).
COMPACT_JUDGE_PROMPT = (
    "[User Question]\n{input}\n\n[A]\n{response_a}\n\n[B]\n{response_b}\n\n#Preferred: ")

# GRAM stage 1 (official GRAM-pre-training-566k rows): the user turn holds the question, the
# assistant turn (the only trained tokens) holds both responses.
PRETRAIN_INSTRUCTION = "[User Question]\n{input}\n\n"
PRETRAIN_OUTPUT = (
    "[The Start of Assistant A's Answer]\n{response_a}\n[The End of Assistant A's Answer]\n\n"
    "[The Start of Assistant B's Answer]\n{response_b}\n[The End of Assistant B's Answer]")


def fill(template: str, prompt: str, response_a: str = "", response_b: str = "") -> str:
  """Fills the three slots by plain replacement, so braces in user text stay untouched."""
  return (template.replace("{input}", prompt).replace("{response_a}", response_a)
          .replace("{response_b}", response_b))
