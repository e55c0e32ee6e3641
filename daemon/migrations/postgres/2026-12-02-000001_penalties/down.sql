DROP TABLE flaskbbd_penalties;
