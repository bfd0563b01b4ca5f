"""PEFT tuners provided by peft_puma."""
