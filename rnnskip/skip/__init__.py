"""Time-step skipping without retraining.

A tiny predictor placed in front of a frozen RNN looks at the step's input
vector ``v_t`` (the embedded token / input features entering the first RNN
layer) and the hidden state ``h_{t-1}`` (every layer's, concatenated) and
decides whether running the step would change the state noticeably; if not,
the step is skipped and the state kept. The RNN's weights are never changed.

Method: Arm Research, "Skipping RNN State Updates without Retraining the
Original Model" (SenSys-ML 2019). The skip-predictor method is the subject of
Arm's US patent 11,663,814 B2 ("Skip predictor for pre-trained recurrent
neural networks"); take advice before commercial use.

Modules:
  features    float runs of the frozen model with skipping, change statistics
  oracle      ideal skipping on the real state change, threshold sweep
  baselines   stop-word removal and Concat(n)
  predictor   float predictors (MLP, logistic, tree, forest), training
  folder      the predictor folder train-predictor writes and --predictor reads
  qpredictor  int8 predictor, its golden evaluation and the C it becomes
  train       the train-predictor flow (oracle labels, relabel rounds, calibration)
  evaluate    int8 (golden) runs with skipping and their MAC accounting
  convert     --predictor / --skip auto inside rnnskip-convert, report section
  plots       PNG figures
"""

#: the patent notice the report and docs carry
PATENT_NOTICE = ("The skip-predictor method is the subject of Arm's US patent 11,663,814 B2 "
                 "(\"Skip predictor for pre-trained recurrent neural networks\"); "
                 "take advice before commercial use.")
