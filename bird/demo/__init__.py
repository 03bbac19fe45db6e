"""A small BIRD-format dataset made by this project: five invented databases kept as text
(`data/<split>/<split>_databases/<db>/schema.sql` and `rows/*.csv`, the rows written by
`python -m bird.demo.generate_rows`), BIRD description files, and original questions with
evidence and gold SQL (`data/train/train.json`, `data/dev/dev.json`, `dev_gold.sql`)."""
