# Our client channel (rpc/channel.c) against a stock server: python3-grpcio
# running echo_server.py. include()d from tests/interop/CMakeLists.txt, which
# sets ESTORE_INTEROP_PYTHON and GRPC_PYTHON_PLUGIN.
if(NOT ESTORE_INTEROP_PYTHON)
  set(ESTORE_INTEROP_PYTHON /usr/bin/python3)
endif()
if(NOT GRPC_PYTHON_PLUGIN)
  set(GRPC_PYTHON_PLUGIN /usr/bin/grpc_python_plugin)
endif()

add_executable(interop_client_vs_python
  ${CMAKE_CURRENT_LIST_DIR}/client_vs_python.c
  ${ESTORE_GENERATED_DIR}/estore/testing/v1/echo.pb-c.c
  ${ESTORE_GENERATED_DIR}/estore/testing/v1/echo.rpc.c)
target_link_libraries(interop_client_vs_python PRIVATE estore_rpc)

add_test(NAME interop_client_vs_python
  COMMAND interop_client_vs_python
          --python ${ESTORE_INTEROP_PYTHON}
          --server ${CMAKE_CURRENT_LIST_DIR}/echo_server.py
          --proto-path ${CMAKE_SOURCE_DIR}/proto
          --protoc ${PROTOC}
          --grpc-python-plugin ${GRPC_PYTHON_PLUGIN})
set_tests_properties(interop_client_vs_python PROPERTIES
  LABELS interop
  TIMEOUT 180
  ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1")
