-- The analytics service owns its own database beside the patients one.
CREATE DATABASE analytics OWNER healthflow;
