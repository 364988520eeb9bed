/* cobrowse agent: placeholder */
