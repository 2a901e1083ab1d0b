import pandas as pd
import requests

def ingest(top_n=10) -> pd.DataFrame:
    # Hacker News API endpoint for top stories
    url = "https://hacker-news.firebaseio.com/v0/topstories.json"

    # Get top story IDs
    response = requests.get(url)
    story_ids = response.json()[:top_n]

    # Calculate metrics
    min_score = float("inf")
    max_score = 0
    total_score = 0

    for story_id in story_ids:
        story_url = f"https://hacker-news.firebaseio.com/v0/item/{story_id}.json"
        story = requests.get(story_url).json()
        score = story.get("score", 0)

        min_score = min(min_score, score)
        max_score = max(max_score, score)
        total_score += score

    avg_score = total_score / len(story_ids)

    # Create DataFrame with metrics
    data = [
        [f"hn_top_{top_n}_min_score", min_score],
        [f"hn_top_{top_n}_max_score", max_score],
        [f"hn_top_{top_n}_avg_score", avg_score],
        [f"hn_top_{top_n}_total_score", total_score],
    ]
    df = pd.DataFrame(data, columns=["metric_name", "metric_value"])
    df["metric_timestamp"] = pd.Timestamp.utcnow()

    return df
