"""Scoring, generation, reasoning judges, voting, ranking, the RewardModel and its server."""
