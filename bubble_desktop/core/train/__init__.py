"""Fine-tuning: training data (data.py) and LoRA jobs in a child process (lora.py)."""
