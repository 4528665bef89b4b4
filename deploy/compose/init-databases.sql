-- One database per service (DESIGN §5): no service reads another's tables.
CREATE DATABASE profile;
CREATE DATABASE interactions;
CREATE DATABASE segmentation;
CREATE DATABASE winback;
