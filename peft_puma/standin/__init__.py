"""The stand-in backbone: a tiny ViT pretrained here, on a pool of classes disjoint from UML-mini's
(:mod:`.pool`), because no pretrained ViT can be downloaded offline (docs/uml_mini.md, "The stand-in backbone").

``python -m peft_puma.standin --output_dir assets/uml_mini_vit`` pretrains it (:mod:`.pretraining`) and records its
zero-shot Recall@1 on UML-mini's validation split."""
