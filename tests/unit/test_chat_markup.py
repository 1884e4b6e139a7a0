"""The policy's chat markup is stripped from what RLHF trainers send, for the formats they
use (ChatML/Qwen, Llama-3), and a prompt that was cut is refused, never guessed at."""
import pytest

from gram_jax.text import chat_markup

QWEN_PROMPT = ("<|im_start|>system\nYou are helpful.<|im_end|>\n"
               "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n")
LLAMA_PROMPT = ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
                "Name a fruit.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")


def test_chatml_prompt_and_response():
  question, answer = chat_markup.split_query(QWEN_PROMPT + "It is 4.<|im_end|>", QWEN_PROMPT)
  assert question == "You are helpful.\n\nWhat is 2 + 2?"
  assert answer == "It is 4."


def test_qwen3_empty_think_block_is_not_part_of_the_answer():
  prompt = QWEN_PROMPT + "<think>\n\n</think>\n\n"
  assert chat_markup.split_query(prompt + "Four.<|im_end|><|endoftext|>", prompt) == (
      "You are helpful.\n\nWhat is 2 + 2?", "Four.")


def test_leading_pads_of_a_left_padded_batch_are_dropped():
  """OpenRLHF decodes left-padded sequences with their pads, at both ends."""
  pads = "<|endoftext|>" * 3
  query = pads + QWEN_PROMPT + "It is 4.<|im_end|>" + pads
  expected = chat_markup.split_query(QWEN_PROMPT + "It is 4.<|im_end|>", QWEN_PROMPT)
  assert chat_markup.split_query(query, QWEN_PROMPT) == expected
  assert chat_markup.split_query(query, pads + QWEN_PROMPT) == expected
  assert chat_markup.split_query("<|pad|>" + query + "<|pad|>", QWEN_PROMPT) == expected
  llama_pads = "<|finetune_right_pad_id|>" * 2
  assert chat_markup.split_query(llama_pads + LLAMA_PROMPT + "An apple.<|eot_id|>",
                                 LLAMA_PROMPT)[1] == "An apple."


def test_llama3_prompt_and_response():
  assert chat_markup.split_query(LLAMA_PROMPT + "An apple.<|eot_id|>", LLAMA_PROMPT) == (
      "Name a fruit.", "An apple.")


def test_a_dialogue_is_kept_as_plain_turns():
  prompt = ("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
            "<|im_start|>user\nAnd 3 + 3?<|im_end|>\n<|im_start|>assistant\n")
  assert chat_markup.question_of(prompt) == "User: Hi\n\nAssistant: Hello!\n\nUser: And 3 + 3?"


def test_plain_text_is_left_as_it_is_but_loses_trailing_end_tokens():
  assert chat_markup.split_query("Q: 2+2?\nA: 4</s>", "Q: 2+2?\nA:") == ("Q: 2+2?\nA:", "4")


def test_a_prompt_cut_by_the_policy_is_refused():
  cut = QWEN_PROMPT[40:]  # OpenRLHF keeps the last max_prompt_len tokens of a long prompt
  with pytest.raises(ValueError, match="text outside its turns"):
    chat_markup.question_of(cut)
  with pytest.raises(ValueError, match="does not start with its prompt"):
    chat_markup.split_query(cut + "4", QWEN_PROMPT)


def test_markup_rendered_by_a_real_chat_template_is_recognised():
  from gram_jax.text import tokenizer as tok
  tokenizer = tok.train_bpe_tokenizer(["What is 2 + 2? It is 4."] * 4, vocab_size=64)
  prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2 + 2?"}],
                                         tokenize=False, add_generation_prompt=True)
  ids = tokenizer.encode(prompt, add_special_tokens=False) + tokenizer.encode(
      "It is 4.<|im_end|>", add_special_tokens=False)
  query = tokenizer.decode(ids, skip_special_tokens=False)  # as OpenRLHF builds it
  assert chat_markup.split_query(query, prompt) == ("What is 2 + 2?", "It is 4.")
