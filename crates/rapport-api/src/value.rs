//! Value models (CLV, churn, health) and survey reports: fits, jobs, scores, alerts.
