"""The card-fraud demo: generated data, the demo workspace and a live traffic simulator."""
