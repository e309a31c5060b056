"""The method registry: one module per method, each registering itself. Add a method: one file, one line here."""

# ruff: noqa: F401
import methods.adapter
import methods.bitfit
import methods.fewshot
import methods.frozen
import methods.full
import methods.gradual
import methods.ia3
import methods.l2sp
import methods.llrd
import methods.lora
import methods.partial
import methods.peft_config
import methods.prefix
import methods.prompt
import methods.qlora
import methods.scratch
