"""Channel rules, one module per op family. The op table (`onnxprune.optable.RULE_MODULES`) is
the one list of the families it reads; a module here is just where a family's rules live."""
