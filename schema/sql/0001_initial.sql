-- placeholder, replaced below
CREATE TABLE IF NOT EXISTS placeholder(x);
