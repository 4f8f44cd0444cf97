"""The ML detectors' metric and label names."""

from __future__ import annotations

from obslab.conventions.metrics import L_OUTCOME, L_SERVICE, MetricSpec

# --- ML detectors (ml/): DDoS detection and auto-baselining ----------------------------------

L_DETECTOR = "detector"
L_MODEL = "model"
L_FEATURE = "feature"
L_PREDICTION = "prediction"
L_ALGORITHM = "algorithm"
L_SERIES = "series"
L_BOUND = "bound"

# The seed's DDoS schema (names must not drift), then what explains it.
DDOS_DETECTION_SCORE = MetricSpec(
    "ddos_detection_score", "gauge",
    "Ensemble anomaly score of the gateway's traffic, 0 (normal) to 1 (attack); absent while stale.")
DDOS_CONFIDENCE = MetricSpec(
    "ddos_confidence", "gauge",
    "How much to trust the verdict, 0-1: distance from the decision threshold times model agreement.")
DDOS_BINARY_PREDICTION = MetricSpec(
    "ddos_binary_prediction", "gauge", "1 while the ensemble says the gateway is under attack, else 0.")
DDOS_MODEL_PREDICTIONS = MetricSpec(
    "ddos_model_predictions_total", "counter", "Verdicts given, by prediction (attack, normal).", (L_PREDICTION,))
DDOS_MODEL_SCORE = MetricSpec(
    "ddos_model_score", "gauge", "Calibrated anomaly score of each model of the ensemble, 0-1.", (L_MODEL,))
DDOS_FEATURE_VALUE = MetricSpec(
    "ddos_feature_value", "gauge", "Current value of each input feature of the DDoS model.", (L_FEATURE,))
DDOS_FEATURE_CONTRIBUTION = MetricSpec(
    "ddos_feature_contribution", "gauge",
    "Drop of the detection score if this feature alone were normal: what drives the verdict.", (L_FEATURE,))
DDOS_THRESHOLD = MetricSpec(
    "ddos_decision_threshold", "gauge", "Score at or above which the verdict is attack.")
DDOS_MODEL_TRAINED = MetricSpec(
    "ddos_model_trained_timestamp_seconds", "gauge", "When the model in use was trained.")
DDOS_RETRAINS = MetricSpec(
    "ddos_model_retrains_total", "counter",
    "Retraining attempts by outcome (accepted, refused: worse than the current model, failed).", (L_OUTCOME,))

ML_INPUT_STALE = MetricSpec(
    "ml_input_stale", "gauge",
    "1 while a detector cannot read fresh inputs from Prometheus (its verdict gauges are withdrawn).",
    (L_DETECTOR,))
ML_LAST_EVALUATION = MetricSpec(
    "ml_last_evaluation_timestamp_seconds", "gauge", "When a detector last evaluated fresh inputs.", (L_DETECTOR,))
ML_EVALUATION_DURATION = MetricSpec(
    "ml_evaluation_duration_seconds", "histogram", "Time of one evaluation (queries and model).", (L_DETECTOR,),
    (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))

BASELINE_OBSERVED = MetricSpec(
    "baseline_observed_value", "gauge", "Latest value of a baselined series.", (L_SERIES, L_SERVICE))
BASELINE_EXPECTED = MetricSpec(
    "baseline_expected_value", "gauge", "Value the algorithm expects now.", (L_SERIES, L_SERVICE, L_ALGORITHM))
BASELINE_UPPER = MetricSpec(
    "baseline_upper_bound", "gauge", "Upper edge of the algorithm's normal band.", (L_SERIES, L_SERVICE, L_ALGORITHM))
BASELINE_LOWER = MetricSpec(
    "baseline_lower_bound", "gauge", "Lower edge of the algorithm's normal band.", (L_SERIES, L_SERVICE, L_ALGORITHM))
BASELINE_SCORE = MetricSpec(
    "baseline_anomaly_score", "gauge",
    "0 on the expected value, 0.5 on the band's edge, towards 1 far outside.", (L_SERIES, L_SERVICE, L_ALGORITHM))
BASELINE_THRESHOLD = MetricSpec(
    "baseline_recommended_threshold", "gauge",
    "The ensemble's recommended alert threshold per bound (upper, lower).", (L_SERIES, L_SERVICE, L_BOUND))
BASELINE_FIT_DURATION = MetricSpec(
    "baseline_fit_duration_seconds", "gauge", "Wall time of the last refit of every series and algorithm.")
BASELINE_LAST_FIT = MetricSpec(
    "baseline_last_fit_timestamp_seconds", "gauge", "When the baselines were last refitted.")
BASELINE_HISTORY_POINTS = MetricSpec(
    "baseline_history_points", "gauge", "Points of history the last refit used, per series.", (L_SERIES, L_SERVICE))
