"""The round loop distill and annotate share (`loop`): examples asked with the stage's prompt,
every sample judged once (`judge`: parsed once, validated once against the gold query), one
valid sample accepted per example.
"""
