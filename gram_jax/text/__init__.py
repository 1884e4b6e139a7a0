"""Tokenizer, prompt templates, rationale format and truncation: text in, token ids out."""
