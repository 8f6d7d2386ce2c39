"""A learner's data pack: one zip per learner or per demo with their readings (CSV), what they mean
(`schema.json`), their grades and a Jupyter notebook that loads it all and draws the plots a report needs."""
