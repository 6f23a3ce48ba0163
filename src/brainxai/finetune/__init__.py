"""Label-fraction fine-tuning and evaluation of 2D classifiers (paper 000 §3, issue 6).

* :mod:`~brainxai.finetune.config` - every knob (``params.yaml`` section ``finetune``);
* :mod:`~brainxai.finetune.data` - the labelled 2D images and the 17-class label coding;
* :mod:`~brainxai.finetune.sampling` - label-fraction subsets: by patient, stratified per
  tumour group, at least one image per class, nested across fractions;
* :mod:`~brainxai.finetune.leakage` - no test patient, no near duplicate of a test image;
* :mod:`~brainxai.finetune.probe` - linear probe on cached frozen-backbone embeddings;
* :mod:`~brainxai.finetune.tune` - full fine-tuning (discriminative LRs, early stopping) and
  paper 004's two-phase run (backbone frozen, then every layer trained);
* :mod:`~brainxai.finetune.cell` - one (init, protocol, fraction, seed) run end to end;
* :mod:`~brainxai.finetune.model` - the classifier and its per-epoch checkpoint contract;
* :mod:`~brainxai.finetune.runs` - run names, checkpoint metadata, training phases.
"""
